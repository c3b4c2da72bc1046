"""The one error a host tool stops with when a check fails before it touches a board."""


class Refused(SystemExit):
    """A check failed: exit status 2, `message` says what is wrong and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message
