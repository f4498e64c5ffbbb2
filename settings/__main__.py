"""``python -m settings``: every setting with its value here; ``--markdown``: the docs table."""

import argparse
from dataclasses import fields

from settings import Settings, current, markdown

SECRET = {"admin_token"}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m settings", description=__doc__)
    parser.add_argument("--markdown", action="store_true", help="print docs/settings.md")
    if parser.parse_args().markdown:
        print(markdown(), end="")
        return
    values = current()
    for f in fields(Settings):
        value = getattr(values, f.name)
        shown = "(set)" if f.name in SECRET and value else repr(value)
        mark = "" if value == f.default else "  *"
        print(f"{Settings.variable(f.name):<36} {shown}{mark}")


if __name__ == "__main__":
    main()
