"""Delivery: the recipients get their links (mail, pages, reminders, approvals, webhooks)."""
