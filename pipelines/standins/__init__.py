"""Local stand-ins for the outside world: an SAP endpoint and an SMTP sink."""
