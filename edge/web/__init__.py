"""The web page: its settings (options), what it reads of a running camera (state), the sink the loop
writes to (sink), the Starlette routes (app, write), /metrics (metrics), uvicorn on a thread (server),
HTTPS (tls), and training from the page in a worker process (trainer).

Imports: edge.sinks, edge.learn, edge.live, edge.tools, edge.core. Never the config (edge.app): the loop
hands it a ConfigStore to change the config file, and a function to ask for a reload.
"""
