"""The platform's REST API: the clients handlers get as ``context.client``."""
