"""What Gluetun itself says about its tunnel: the control-server client and its poller."""
