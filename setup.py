"""The one thing pyproject.toml cannot say: the optional compiled line scanner.

``sharebatch.receipts._linescan`` reads the plain access log lines of ``usage`` several times
faster than the regex engine (docs/performance.md, issue 15). It is optional: where no C
compiler is at hand the build goes on without it and ``accesslog.scan_text`` reads every line
in Python, with the same results.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "sharebatch.receipts._linescan",
            ["sharebatch/receipts/_linescan.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra"],
        )
    ]
)
