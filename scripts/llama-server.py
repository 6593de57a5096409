"""Serves a GGUF chat model over the OpenAI HTTP API with llama.cpp's server (xllamacpp).

Usage: python llama-server.py MODEL.gguf PORT [THREADS]. Binds 127.0.0.1 only; runs until killed.
"""
import sys
import time

import xllamacpp as xlc

model, port = sys.argv[1], int(sys.argv[2])
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
params = xlc.CommonParams()
params.model.path = model
params.hostnames = ["127.0.0.1"]
params.port = port
params.n_ctx = 2048
params.cpuparams.n_threads = threads
params.use_jinja = True
server = xlc.Server(params)
while True:
    time.sleep(3600)
