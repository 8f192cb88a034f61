"""Root conftest: the medgate plugin itself comes from the `pytest11` entry point (pyproject.toml).

`pytester` is enabled here because plugins may only be requested from the root conftest; the
project's own tests (tests/) use it to run whole medgate sessions in subprocesses.
"""

pytest_plugins = ["pytester"]
