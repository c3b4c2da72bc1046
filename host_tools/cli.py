"""spot: one command line for the host side (build, bench, demo, ...)."""
from __future__ import annotations

import argparse
import sys


def _build(args: argparse.Namespace) -> int:
    from host_tools import build

    archs = [build.TARGETS.get(t, t) for t in args.target] if args.target else None
    for arch, outs in build.build_all(archs).items():
        print(f"{arch:10s} {len(outs)} modules -> {outs[0].parent.relative_to(build.ROOT)}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from host_tools import bench

    return bench.main(quick=args.quick)


def _demo(args: argparse.Namespace) -> int:
    from host_tools import demo

    return demo.main()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="spot", description="Build, measure and demonstrate SPOT end-device firmware.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("build", help="compile lib/ to .mpy for each board architecture",
                       description="Compile the device library to .mpy under build/mpy/<arch>/.")
    p.add_argument("target", nargs="*",
                   help="board or architecture (unix, esp32, rp2040, esp32c3, rp2350, x64, ...); "
                        "default: all")
    p.set_defaults(func=_build)

    p = sub.add_parser("bench", help="measure the figures and write build/bench.json")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (for tests)")
    p.set_defaults(func=_bench)

    p = sub.add_parser("demo", help="run the end-to-end demo against a local Mosquitto")
    p.set_defaults(func=_demo)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
