"""`spot cloud ...`: run the service, retire a worker, take a registry in, make API tokens,
migrate.

    spot cloud serve [--db build/cloud.sqlite | --db postgresql://...] [--broker HOST:PORT]
    spot cloud retire --worker 2 --shared cloud --db postgresql://...
    spot cloud import ~/.config/spot/registry.json
    spot cloud token NAME --scopes read,command
    spot cloud migrate
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from host_tools.cloud.service import Settings, default_db


def add_parser(sub: argparse._SubParsersAction) -> None:
    cloud = sub.add_parser("cloud", help="the SPOT cloud service: serve, retire, import, token, migrate",
                           description="The cloud between the devices and the outside world: the "
                                       "registry, device shadows, commands tracked to their ACK, a "
                                       "REST API and a dashboard.")
    csub = cloud.add_subparsers(dest="cloud_command", required=True, metavar="ACTION")
    db_help = "SQLite file or postgresql:// URL (default $SPOT_CLOUD_DB or build/cloud.sqlite)"

    p = csub.add_parser("serve", help="run the service (MQTT side, API, dashboard)")
    p.add_argument("--db", default=default_db(), help=db_help)
    p.add_argument("--broker", default="127.0.0.1:1883", metavar="HOST:PORT")
    p.add_argument("--host", default="127.0.0.1", help="HTTP address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    p.add_argument("--worker", default="0", help="this worker's id (one MQTT session each)")
    p.add_argument("--shared", metavar="GROUP",
                   help="take uplinks through the shared subscription $share/GROUP (several workers)")
    p.add_argument("--workers", type=int, default=1,
                   help="start N workers on consecutive ports, sharing the uplinks (needs PostgreSQL "
                        "for N > 1)")
    p.add_argument("--retention-days", type=float, default=30.0, help="keep reports this long")
    p.add_argument("--broker-user", metavar="USER",
                   help="log in to the broker (its access control: spot broker-config); the cloud's "
                        "account is 'cloud'")
    p.add_argument("--broker-password-file", metavar="FILE", type=Path,
                   help="the account's password (default: $SPOT_BROKER_PASSWORD)")
    p.add_argument("--broker-ca", metavar="PEM", help="TLS to the broker, verified against this CA")
    p.add_argument("--plugins", metavar="FILE", help="a TOML file enabling plugins per site "
                   "(OpenADR, S2, Home Assistant: see host_tools/cloud/plugins)")
    p.set_defaults(cloud=_serve)

    p = csub.add_parser("retire", help="take a worker out of a shared group for good: store what the "
                        "broker queued for it, then end its session",
                        description="A worker's MQTT session outlives the worker: while it is away the "
                                    "broker goes on giving it its share of the uplinks and keeps them "
                                    "until it returns. Retire a worker that will not return (scaled "
                                    "down, its host gone): its queue is stored, its subscriptions "
                                    "dropped and its session ended. Run it with the worker stopped.")
    p.add_argument("--worker", required=True, help="the retired worker's id (as it was served)")
    p.add_argument("--shared", metavar="GROUP", required=True, help="its shared subscription group")
    p.add_argument("--db", default=default_db(), help=db_help)
    p.add_argument("--broker", default="127.0.0.1:1883", metavar="HOST:PORT")
    p.add_argument("--broker-user", metavar="USER", help="log in to the broker (the cloud's account)")
    p.add_argument("--broker-password-file", metavar="FILE", type=Path,
                   help="the account's password (default: $SPOT_BROKER_PASSWORD)")
    p.add_argument("--broker-ca", metavar="PEM", help="TLS to the broker, verified against this CA")
    p.add_argument("--idle", type=float, default=2.0, metavar="S",
                   help="done when nothing came for this long (default 2 s)")
    p.set_defaults(cloud=_retire)

    p = csub.add_parser("import", help="take a JSON registry (spot provision's) into the database")
    p.add_argument("registry", type=Path)
    p.add_argument("--db", default=default_db(), help=db_help)
    p.set_defaults(cloud=_import)

    p = csub.add_parser("token", help="make an API token (printed once; only its hash is kept)")
    p.add_argument("name")
    p.add_argument("--scopes", default="read", help="comma-separated: read, command, admin")
    p.add_argument("--revoke", action="store_true", help="revoke the token called NAME instead")
    p.add_argument("--db", default=default_db(), help=db_help)
    p.set_defaults(cloud=_token)

    p = csub.add_parser("migrate", help="bring the database schema up to date (serve does it too)")
    p.add_argument("--db", default=default_db(), help=db_help)
    p.set_defaults(cloud=_migrate)


def run(args: argparse.Namespace) -> int:
    return args.cloud(args)


def _store(db: str):  # noqa: ANN202
    from host_tools.cloud.store import Store

    if "://" not in db:
        Path(db).parent.mkdir(parents=True, exist_ok=True)
    return Store(db)


def _serve(args: argparse.Namespace) -> int:
    import logging

    from host_tools.cloud import service

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    s = Settings(db=args.db, broker=args.broker, host=args.host, port=args.port, worker=args.worker,
                 shared=args.shared, retention_days=args.retention_days,
                 plugins=args.plugins, broker_user=args.broker_user, broker_ca=args.broker_ca,
                 broker_password=(args.broker_password_file.read_text().strip() if args.broker_password_file
                                  else os.environ.get("SPOT_BROKER_PASSWORD")))
    if "://" not in s.db:
        Path(s.db).parent.mkdir(parents=True, exist_ok=True)
    if args.workers > 1:
        if "://" not in s.db:
            raise ValueError("several workers share their state through PostgreSQL: give --db postgresql://...")
        return service.serve_workers(s, args.workers)
    return service.serve(s)


def _retire(args: argparse.Namespace) -> int:
    from host_tools.cloud.bridge import Bridge

    password = (args.broker_password_file.read_text().strip() if args.broker_password_file
                else os.environ.get("SPOT_BROKER_PASSWORD", ""))
    store = _store(args.db)
    bridge = Bridge(store, args.broker, args.worker, args.shared,
                    auth=(args.broker_user, password) if args.broker_user else None, tls_ca=args.broker_ca)
    try:
        n = bridge.retire(args.idle)
    except (OSError, RuntimeError) as e:  # TimeoutError, a refused connection, a lost session
        bridge.stop()  # never go on fighting a live worker for its session
        print(f"spot cloud retire: {e}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"worker {args.worker} retired: {n} uplinks stored from its session; the broker sends it "
          f"nothing more")
    return 0


def _import(args: argparse.Namespace) -> int:
    data = json.loads(args.registry.read_text())
    counter = 0
    counter_file = args.registry.parent / f"counter-{int(data.get('cloud', 1)):08x}.json"
    if counter_file.exists():
        counter = int(json.loads(counter_file.read_text())) + 1
    n = _store(args.db).import_registry(data, counter)
    print(f"imported {n['sites']} sites, {n['devices']} devices, {n['keys']} keys into {args.db}")
    return 0


def _token(args: argparse.Namespace) -> int:
    store = _store(args.db)
    if args.revoke:
        store.revoke_token(args.name)
        print(f"token {args.name!r} revoked")
        return 0
    scopes = [x for x in args.scopes.replace(",", " ").split() if x]
    print(store.create_token(args.name, scopes))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from host_tools.cloud import migrations

    store = _store(args.db)
    with store.engine.connect() as conn:
        print(f"schema version {migrations.current(conn)} (latest {migrations.LATEST})")
    return 0
