"""meshcall: a video-meeting appliance for local networks in one executable."""

__version__ = "0.1.0"
