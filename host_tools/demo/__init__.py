"""The demos: the roles on virtual boards (make demo) and the security walk-through."""
