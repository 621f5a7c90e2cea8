"""Slack's side of the bot: Block Kit views and the bot's messages (`views`), reading a form
(`drafts`), Slack people (`people`), and what the handlers ask for a form: which form a person gets
(`forms`), the requester's similar tickets (`suggestions`), *Edit details* (`edits`)."""
