"""Returns (RMA): goods coming back before a refund is paid, received and inspected."""
