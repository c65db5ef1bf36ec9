"""``jobhooks demo`` and ``jobhooks simulate``: an orchestrator fleet against a server."""
