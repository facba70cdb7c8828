"""One module per API surface; each maps its wire format onto the service facade."""
