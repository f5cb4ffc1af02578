"""The agent console: work queues, claims, saved filters and the console's pages."""
