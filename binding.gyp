{
  "targets": [
    {
      "target_name": "te_shm",
      "sources": ["src/native/shm.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-fvisibility=hidden"]
    }
  ]
}
