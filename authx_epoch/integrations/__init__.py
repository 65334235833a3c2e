"""Integrations with the frameworks authx-epoch plugs into."""
