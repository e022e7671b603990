"""Version numbers: the SDK's own and the one protocol version it speaks."""

__version__ = "0.1.0"

#: The Jupyter messaging protocol version kernelsdk implements. It is written into every
#: header, ``kernel_info_reply.protocol_version`` and ``kernel.json`` alike, so clients never
#: see three different answers (ipykernel reports 5.3, 5.4 and 5.5 in those three places).
PROTOCOL_VERSION = "5.5"
