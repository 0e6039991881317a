"""A tiny package: the build tests pip-install it into an image and import it in a container."""


def greet() -> str:
    return "hello from minipkg"
