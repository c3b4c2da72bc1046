"""S2 resource-manager plugin: the cloud as the S2 RM of each device towards a CEM (see plugin.py)."""
