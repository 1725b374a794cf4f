"""The protocol floor, shared by the client and the server: the binary ``frames`` layout and
name rules, the client's ``wire`` encoding, ``jsonrpc`` (error codes by name, message
builders, ``rpc_call``) and ``access`` (where the socket is and whether its folder can be
trusted). docs/protocol.md is the specification.
"""
