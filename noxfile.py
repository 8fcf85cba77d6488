"""Sessions: `nox -s tests`, `nox -s lint`, `nox -s bench`."""

import nox

nox.options.sessions = ["tests", "lint"]


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The test suite, as CI runs it."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff over the library, the CLI, the tests and the benchmarks."""
    session.install("ruff")
    session.run("ruff", "check", "cas", "cli", "tests", "bench")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmarks: vvstore side by side with its anchors, reported as ratios."""
    session.install("-e", ".[test,bench]")
    session.run("python", "-m", "bench", *session.posargs)
