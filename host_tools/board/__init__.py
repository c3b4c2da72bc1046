"""Board tools: build, flash, deploy, emulate, the virtual board and the HIL bench."""
