"""The client's copy of the protocol limits (spool/codec.py) against the C headers that define
them (common/spool_limits.h, src/wire/*.h). The client checks limits itself so that a too-large
request fails before it is sent; a limit changed on one side only would make the client refuse
what the server takes, or send what the server answers TOO_LARGE. Skipped when the C sources are
not beside the client (an installed package)."""

from __future__ import annotations

import re
import unittest
from pathlib import Path

from spool import codec

ROOT = Path(__file__).resolve().parents[3]

# codec.py name -> (header, C macro)
PAIRS = {
    "QUEUE_NAME_SIZE_MAX": ("common/spool_limits.h", "LIMIT_QUEUE_NAME_MAX_BYTES"),
    "KEY_SIZE_MAX": ("common/spool_limits.h", "LIMIT_KEY_MAX_BYTES"),
    "RESULT_SIZE_MAX": ("common/spool_limits.h", "LIMIT_RESULT_MAX_BYTES"),
    "TEXT_SIZE_MAX": ("src/wire/wire_frame.h", "WIRE_TEXT_SIZE_MAX"),
    "BATCH_COUNT_MAX": ("src/wire/wire_frame.h", "WIRE_BATCH_COUNT_MAX"),
    "RESERVE_COUNT_MAX": ("common/spool_limits.h", "LIMIT_RESERVE_MAX_JOBS"),
    "RESERVE_QUEUES_MAX": ("common/spool_limits.h", "LIMIT_RESERVE_MAX_QUEUES"),
    "STATS_QUEUES_MAX": ("src/wire/wire_frame.h", "WIRE_STATS_QUEUES_MAX"),
    "FRAME_SIZE_LIMIT": ("src/wire/wire_frame.h", "WIRE_FRAME_SIZE_LIMIT"),
}


def c_value(header: str, macro: str) -> int:
    """The value of a #define made of integer literals, * and parentheses (u suffixes)."""
    text = (ROOT / header).read_text()
    m = re.search(rf"^#define {macro}\s+(.+?)\s*(/\*.*)?$", text, re.M)
    if m is None:
        raise AssertionError(f"{macro} not found in {header}")
    expr = re.sub(r"(\d+)u(ll)?\b", r"\1", m.group(1))
    if not re.fullmatch(r"[\d\s*()+]+", expr):
        raise AssertionError(f"{macro} = {m.group(1)!r} is not a plain integer expression")
    return int(eval(expr))  # noqa: S307 - digits and * only, checked above


@unittest.skipUnless((ROOT / "common" / "spool_limits.h").exists(), "C sources not present")
class LimitsMatchServer(unittest.TestCase):
    def test_every_limit_matches(self) -> None:
        for name, (header, macro) in PAIRS.items():
            with self.subTest(name=name):
                self.assertEqual(getattr(codec, name), c_value(header, macro),
                                 f"codec.{name} != {macro} ({header})")

    def test_parser_reads_products(self) -> None:
        # The check above must be able to fail: a parsed value is compared, not assumed.
        self.assertEqual(c_value("src/wire/wire_frame.h", "WIRE_FRAME_SIZE_LIMIT"),
                         64 * 1024 * 1024)


if __name__ == "__main__":
    unittest.main()
