"""Cloud plugins: one package per outside standard, each translating it into SPOT.

A plugin lives in its own folder here, `plugins/<name>/`, with a `manifest.json`
(its name, what it is for, the PyPI requirements it needs, all pinned in the
project's requirements) and a `plugin.py` defining `Plugin`, a subclass of
`base.Plugin`. A new standard is a new folder and nothing else: the host finds
it by name from the cloud's plugin configuration (`spot cloud serve --plugins
plugins.toml`), which enables it per site:

    [[plugin]]
    name = "home_assistant"
    sites = ["home"]
    [plugin.options]
    discovery_prefix = "homeassistant"

See base.py for what a plugin receives and may do, host.py for how it is run.
"""
