"""The daemon as users run it: its image, as a container next to Gluetun, and the compose stacks."""
