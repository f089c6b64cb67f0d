"""The app-facing gRPC API: the ConsumerService stream, request checks, responses, transport
security. The only code that talks to gRPC.
"""
