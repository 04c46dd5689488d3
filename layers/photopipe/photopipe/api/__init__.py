"""The HTTP API (Powertools APIGatewayHttpResolver)."""
