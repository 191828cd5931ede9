"""Make property-key functions."""


def _key(name: str):
    def key() -> str:
        return name

    key.__name__ = name.lower()
    key.__doc__ = f"The ``{name}`` property key."
    return key
