{
  "targets": [
    {
      "target_name": "te_native",
      "sources": ["src/native/native.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-fvisibility=hidden"]
    }
  ]
}
