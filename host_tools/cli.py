"""spot: one command line for the host side (build, bench, demo, ...)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _build(args: argparse.Namespace) -> int:
    from host_tools.board import build

    if args.sync_packages:
        build.sync_package_files()
        print("lib/spot/package.json and manifest.py list the device modules again")
    targets = list(args.target) + list(args.targets or [])
    unknown = [t for t in targets
               if t not in build.TARGETS and t not in build.ARCHS and t != build.BYTECODE]
    if unknown:
        raise ValueError(f"unknown target {unknown[0]!r}: one of {', '.join(build.TARGETS)} "
                         f"or an architecture ({', '.join(build.ARCHS)})")
    archs = sorted({build.TARGETS.get(t, t) for t in targets}) if targets else None
    for arch, outs in build.build_all(archs).items():
        where = (build.BUILD / "mpy" / arch).relative_to(build.ROOT)
        print(f"{arch:10s} {len(outs)} modules -> {where}  (freeze with {where}/manifest.py)")
        for role in args.role or ():
            outs = build.build_role(arch, role)
            where = build.role_image_dir(arch, role).relative_to(build.ROOT)
            print(f"{arch:10s} {role}: {len(outs)} modules, "
                  f"{sum(p.stat().st_size for p in outs):,} bytes -> {where}  "
                  f"(freeze with {where}/manifest.py)")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from host_tools.bench import suite as bench

    return bench.main(quick=args.quick)


def _demo(args: argparse.Namespace) -> int:
    if args.security:
        from host_tools.demo import security as demo

        return demo.main()
    if args.openadr:
        from host_tools.demo import openadr as demo

        return demo.main()
    from host_tools.demo import roles as role_demo

    return role_demo.main(stay=args.stay)


def _registry(args: argparse.Namespace):
    from host_tools.cloud.registry import Registry

    return Registry(args.registry)


def _send(args: argparse.Namespace, reg, device: int, raw: bytes, what: str) -> None:
    from host_tools.cloud import publish

    site = reg.device(device)["site"]
    if args.mqtt:
        topic = publish.device_topic(site, device)
        publish.publish(args.mqtt, topic, raw)
        print(f"{what}: {len(raw)}-byte frame queued on {topic} (QoS 1)")
    else:
        print(f"{what}: frame for device {device:08x} (hex; send it with --mqtt HOST:PORT):")
        print(raw.hex())


def _provision(args: argparse.Namespace) -> int:
    from host_tools.cloud.registry import parse_address

    reg = _registry(args)
    address = reg.provision(args.site, parse_address(args.device) if args.device else None)
    reg.save()
    written = reg.write_device_files(address, args.out)
    if args.tls:
        from host_tools.cloud import broker_config

        (args.out / "ca.der").write_bytes(broker_config.device_ca(reg))
    print(f"device {address:08x} provisioned in site {args.site!r} (registry {reg.path})")
    print(f"  broker account {address:08x} (password in identity.json; broker files: "
          "spot broker-config --out DIR)")
    for p in written:
        print(f"  {p}  (secret: deploy to the board, keep out of the repository)")
    if args.tls:
        print(f"  {args.out / 'ca.der'}  (the broker's CA, for TLS: deploy it too)")
    return 0


def _pair(args: argparse.Namespace) -> int:
    from host_tools.cloud.registry import class_mask, parse_address

    reg = _registry(args)
    device = parse_address(args.device)
    entry = reg.pair(parse_address(args.controller), device, class_mask(args.classes))
    _send(args, reg, device, reg.key_add_frame(entry), f"pairing key {entry.key_id}")
    reg.save()
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from host_tools.cloud.registry import parse_address

    reg = _registry(args)
    device = parse_address(args.device)
    old, new = reg.rotate(device, parse_address(args.peer) if args.peer else None)
    _send(args, reg, device, reg.key_add_frame(new), f"new key {new.key_id} (replaces {old.key_id})")
    reg.save()
    print(f"key {old.key_id} stays valid for frames already queued; when they are delivered:\n"
          f"  spot retire {device:#010x} {old.key_id}")
    return 0


def _retire(args: argparse.Namespace) -> int:
    from host_tools.cloud.registry import parse_address

    reg = _registry(args)
    device = parse_address(args.device)
    entry = next((e for e in reg.entries(device) if e.key_id == args.key_id), None)
    if entry is None:
        raise SystemExit(f"device {device:08x} has no key {args.key_id}")
    frame_ = reg.key_retire_frame(device, entry.key_id, entry.peer)
    reg.retire(device, entry.key_id)  # refuses the last admin key before anything is sent
    _send(args, reg, device, frame_, f"retire key {entry.key_id}")
    reg.save()
    return 0


def _keys(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from host_tools.cloud.registry import CLASS_NAMES

    reg = _registry(args)
    t = Table(title=f"keys in {reg.path}")
    for col in ("device", "key id", "peer", "may send", "kind", "state"):
        t.add_column(col)
    for e in reg.entries():
        names = ",".join(n for n, c in CLASS_NAMES.items() if e.classes >> c & 1)
        kind = "group" if e.group else ("device (admin)" if e.admin else "pairing")
        t.add_row(f"{e.device:08x}", str(e.key_id), f"{e.peer:08x}", names, kind, e.state)
    Console().print(t)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="spot", description="Build, measure and demonstrate SPOT end-device firmware.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("build", help="compile lib/ and firmware/ to .mpy for a board",
                       description="Compile the device library and firmware to .mpy under "
                                   "build/mpy/<arch>/, with a manifest.py to freeze the same "
                                   "modules into a custom MicroPython build.")
    p.add_argument("target", nargs="*",
                   help="board or architecture (unix, esp32, rp2040, esp32c3, rp2350, x64, ...); "
                        "default: all")
    p.add_argument("--target", dest="targets", action="append", metavar="TARGET",
                   help="the same, as an option (repeatable)")
    p.add_argument("--role", action="append", choices=("thermostat", "smart_plug", "heat_pump"),
                   help="also write the image of one role (repeatable): build/images/<arch>/<role>/, "
                        "only the modules that role uses, with its own manifest.py")
    p.add_argument("--sync-packages", action="store_true",
                   help="also rewrite lib/spot/package.json and manifest.py from the sources")
    p.set_defaults(func=_build)

    p = sub.add_parser("bench", help="measure the figures and write build/bench.json")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (for tests)")
    p.set_defaults(func=_bench)

    p = sub.add_parser("demo", help="run the end-to-end demo: the cloud service, a private Mosquitto",
                       description="Three virtual boards (thermostat, smart plug, heat pump) run "
                                   "the firmware under the MicroPython unix port; the cloud service "
                                   "(build/demo-cloud.sqlite) sends prices, demand response and "
                                   "commands through its API while they sleep.")
    p.add_argument("--security", action="store_true",
                   help="instead: one device, and the frames an attacker could send it")
    p.add_argument("--openadr", action="store_true",
                   help="instead: an OpenADR 2.0b VTN's load-shed event reaching the three devices "
                        "through the cloud's energy manager, and their opt-in going back")
    p.add_argument("--stay", action="store_true",
                   help="keep the boards and the cloud running after the scenario, until Ctrl-C "
                        "(to look around in the dashboard and with spot ctl)")
    p.set_defaults(func=_demo)

    reg_help = "the pairing registry (default $SPOT_REGISTRY or ~/.config/spot/registry.json)"
    mqtt_help = "publish the frame to the device's topic on this broker (HOST:PORT)"

    p = sub.add_parser("provision", help="create a device's identity and keys",
                       description="Register a device (id, device key, its site's group key) and "
                                   "write identity.json (with its broker account) and keys.json for deploying to it.")
    p.add_argument("--site", required=True, help="the site (a group key is made per site)")
    p.add_argument("--device", help="the device address (default: the next free one)")
    p.add_argument("--out", required=True, type=Path, help="folder for the device's files")
    p.add_argument("--tls", action="store_true",
                   help="also write ca.der, the registry's CA, for a device that connects with "
                        "TLS (its config: \"broker\": {..., \"tls\": true})")
    p.add_argument("--registry", type=Path, help=reg_help)
    p.set_defaults(func=_provision)

    p = sub.add_parser("pair", help="let a controller send a device some message classes",
                       description="Create a pairwise key between a controller and a device and "
                                   "send it to the device, encrypted under its device key.")
    p.add_argument("controller", help="the controller's address")
    p.add_argument("device", help="the device's address")
    p.add_argument("--classes", default="command,info,timesync",
                   help="what the controller may send: command, info, timesync, discovery, ...")
    p.add_argument("--mqtt", metavar="HOST:PORT", help=mqtt_help)
    p.add_argument("--registry", type=Path, help=reg_help)
    p.set_defaults(func=_pair)

    p = sub.add_parser("rotate", help="give a device a new key; the old one stays until retired",
                       description="Rotate the key between a device and the cloud (or --peer). "
                                   "Frames queued under the old key still verify until `retire`.")
    p.add_argument("device")
    p.add_argument("--peer", help="the other end of the key (default: the cloud)")
    p.add_argument("--mqtt", metavar="HOST:PORT", help=mqtt_help)
    p.add_argument("--registry", type=Path, help=reg_help)
    p.set_defaults(func=_rotate)

    p = sub.add_parser("retire", help="withdraw a key from a device")
    p.add_argument("device")
    p.add_argument("key_id", type=int)
    p.add_argument("--mqtt", metavar="HOST:PORT", help=mqtt_help)
    p.add_argument("--registry", type=Path, help=reg_help)
    p.set_defaults(func=_retire)

    from host_tools.cloud import cloud_cli, ctl_cli

    ctl_cli.add_parser(sub, reg_help)
    sub.choices["ctl"].set_defaults(func=ctl_cli.run)
    cloud_cli.add_parser(sub)
    sub.choices["cloud"].set_defaults(func=cloud_cli.run)

    from host_tools.local import cli as local_cli

    local_cli.add_parser(sub, reg_help)

    from host_tools.board import deploy, emulate, flash
    from host_tools.sim import fleet

    flash.add_parser(sub)
    deploy.add_parser(sub)
    emulate.add_parser(sub)
    fleet.add_parser(sub)

    from host_tools.cloud import broker_config

    broker_config.add_parser(sub, reg_help)

    p = sub.add_parser("keys", help="list the registry's keys (never their secrets)")
    p.add_argument("--registry", type=Path, help=reg_help)
    p.set_defaults(func=_keys)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (KeyError, ValueError) as e:
        print(f"spot {args.command}: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
