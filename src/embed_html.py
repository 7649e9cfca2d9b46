#!/usr/bin/env python3
"""Turn the dashboard page into a C header: a NUL-terminated array of its bytes (an array, not
a string literal: ISO C bounds literals to 4095 bytes and the build is -pedantic -Werror), so
spoold serves it from memory. Usage: embed_html.py IN.html OUT.h"""
import sys

data = open(sys.argv[1], "rb").read() + b"\0"
out = ["/* Generated from dashboard.html by embed_html.py: do not edit. */\n",
       "static const unsigned char dashboard_html[] = {\n"]
for start in range(0, len(data), 16):
    out.append("    " + ", ".join("%d" % b for b in data[start:start + 16]) + ",\n")
out.append("};\n")
open(sys.argv[2], "w").write("".join(out))
