"""What `machine` reaches through a virtual board's pins: the pads (mode, pull, output,
hold) wired to the role's models (relays, inputs, 1-Wire sensors, the Modbus UART).
The models live on the server's side, on the wall clock, across every reset."""
from __future__ import annotations

import threading
from typing import Any

from .chips import CHIPS, pin_map

_OUT = (3, 7)  # Pin.OUT, Pin.OPEN_DRAIN (machine_board's numbers)


class Peripherals:
    """The board's pads and the models behind them. Its rpc_* methods answer
    machine_board's calls of the same name (the caller holds lock)."""

    def __init__(self, chip: str, board: Any, lock: threading.RLock) -> None:
        self.chip = chip
        self.board = board  # boards/virtual's models for the role
        self.lock = lock
        self._gpios = CHIPS[chip]["gpios"]
        self._pins, self._options = pin_map(chip)
        self._pads: dict[int, dict] = {}
        self._gpio_role: dict[int, tuple[str, str]] = {}
        for name, gpio in self._pins.items():
            kind = self._part_kind(name)
            if kind:
                self._gpio_role[gpio] = (kind, name)

    def _part_kind(self, name: str) -> str | None:
        """What a pin name is for this role's models: "relay", "input", "sensor" or None."""
        for kind, probe in (("relay", self.board.relay), ("input", self.board.input),
                            ("sensor", self.board.temperature)):
            try:
                probe(name)
            except ValueError:
                continue
            return kind
        return None

    def reset(self, keep_held: bool) -> None:
        """A reset releases the pads (relays drop out); deep sleep keeps held ones."""
        with self.lock:
            for gpio, (kind, name) in self._gpio_role.items():
                pad = self._pads.get(gpio)
                if kind == "relay" and not (keep_held and pad and pad["hold"]):
                    self.board.relay(name).set(False)
            self._pads = {g: p for g, p in self._pads.items() if keep_held and p["hold"]}

    # pins --------------------------------------------------------------------
    def _gpio(self, pin: int | str) -> int:
        if isinstance(pin, str):
            if pin in self._pins and self._pins[pin] in self._gpio_role:
                return self._pins[pin]
            if pin.upper().startswith(("GPIO", "GP")):
                pin = int(pin.upper().lstrip("GPIO"))
            else:
                raise ValueError(f"invalid pin {pin!r}")
        if not 0 <= int(pin) < self._gpios:
            raise ValueError("invalid pin")
        return int(pin)

    def _pad(self, gpio: int) -> dict:
        return self._pads.setdefault(gpio, {"mode": None, "pull": None, "out": None, "hold": False})

    def _active_low(self, name: str) -> int:
        return 1 if self._options.get(name, {}).get("active_low") else 0

    def rpc_pin_init(self, pin, mode, pull, value, hold) -> None:
        gpio = self._gpio(pin)
        pad = self._pad(gpio)
        kind, name = self._gpio_role.get(gpio, (None, None))
        if mode is not None:
            if mode in _OUT and kind == "input" and self.chip == "esp32" and gpio >= 34:
                raise ValueError("pin can only be input")
            pad["mode"] = mode
        if pull is not None:
            pad["pull"] = pull
        if hold is not None:
            pad["hold"] = bool(hold)
        if value is not None:
            self.rpc_pin_set(gpio, value)

    def rpc_pin_get(self, pin) -> int:
        gpio = self._gpio(pin)
        pad = self._pad(gpio)
        kind, name = self._gpio_role.get(gpio, (None, None))
        if kind == "relay":
            if pad["out"] is not None:
                return pad["out"]
            return int(self.board.relay(name).on) ^ self._active_low(name)
        if kind == "input":
            inverted = 1 if self._options.get(name, {}).get("inverted") else 0
            return self.board.input(name).value() ^ inverted
        if pad["out"] is not None and pad["mode"] in _OUT:
            return pad["out"]
        return 1 if pad["pull"] == 2 else 0

    def rpc_pin_set(self, pin, value) -> None:
        gpio = self._gpio(pin)
        pad = self._pad(gpio)
        pad["out"] = 1 if value else 0
        kind, name = self._gpio_role.get(gpio, (None, None))
        if kind == "relay":
            self.board.relay(name).set(bool(pad["out"] ^ self._active_low(name)))

    # 1-Wire ------------------------------------------------------------------
    def rpc_ow_present(self, pin) -> bool:
        return self._gpio_role.get(self._gpio(pin), ("",))[0] == "sensor"

    def rpc_ow_temp(self, pin) -> float | None:
        kind, name = self._gpio_role.get(self._gpio(pin), (None, None))
        if kind != "sensor":
            return None
        return self.board.temperature(name)

    # UART --------------------------------------------------------------------
    def _uart_port(self, uid):
        """The model behind UART uid: the heat pump's Modbus responder, or None."""
        if uid != self._options.get("modbus", {}).get("uart"):
            return None
        try:
            return self.board.uart("modbus")
        except ValueError:
            return None

    def rpc_uart_init(self, uid) -> None:
        return None

    def rpc_uart_write(self, uid, hexdata: str) -> int:
        data = bytes.fromhex(hexdata)
        port = self._uart_port(uid)
        if port is not None:
            port.write(data)
        return len(data)

    def rpc_uart_read(self, uid, n: int) -> str | None:
        port = self._uart_port(uid)
        if port is None:
            return None
        data = port.read(n if n is not None and n >= 0 else 4096)
        return None if not data else bytes(data).hex()

    def rpc_uart_any(self, uid) -> int:
        port = self._uart_port(uid)
        return port.any() if port is not None else 0
