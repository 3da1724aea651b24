"""mcpdo: Business-as-Code over MCP."""

__version__ = "0.1.0"
