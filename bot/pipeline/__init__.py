"""From a journaled submission to a ticket: the durable worker (`worker`, which knows nothing of
tickets) and the ticket pipeline it runs (`service`)."""
