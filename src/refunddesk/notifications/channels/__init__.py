"""Customer channels: the ports the send job uses, and their adapters (SMTP, Twilio-style SMS)."""
