"""`rayfit serve`: a REST and WebSocket API that runs experiments on Ray, with a live dashboard.

The registry (SQL) is the truth for runs, their states and their messages; the runner starts each
run as a detached Ray actor and follows its folder's events.jsonl; the app answers HTTP and WebSocket.
"""
