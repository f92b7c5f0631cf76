"""The engine process: the ZeroMQ control loop, the job queue and its workers, the
result cache, confinement of client paths, and CurveZMQ keys.

Only the server uses these modules. The wire format and message schemas live in
`longanim.protocol`, shared with the clients.
"""
