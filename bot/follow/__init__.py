"""After the ticket: the bot follows the tickets it filed (the live card, the notice when one is
resolved or cancelled, *Close ticket* / *Reopen* / *Add a comment*) — docs/after-the-ticket.md."""
