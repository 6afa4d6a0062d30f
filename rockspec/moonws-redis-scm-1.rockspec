-- LuaRocks package for moonws.redis, the hiredis adapter behind
-- moonws.pubsub.  A rock of its own because LuaRocks' builtin backend has
-- no optional modules: every external dependency of a rockspec is
-- required, and moonws itself must install where hiredis is absent.
--   luarocks --lua-version 5.4 make rockspec/moonws-scm-1.rockspec
--   luarocks --lua-version 5.4 make rockspec/moonws-redis-scm-1.rockspec
rockspec_format = "3.0"
package = "moonws-redis"
version = "scm-1"
source = {
  url = "git+https://example.invalid/moonws.git",
}
description = {
  summary = "Redis publish/subscribe for moonws (moonws.pubsub), on hiredis",
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
  "moonws",
}
external_dependencies = {
  HIREDIS = { header = "hiredis/async.h", library = "hiredis" },
}
build = {
  type = "builtin",
  modules = {
    ["moonws.redis"] = {
      sources = { "csrc/redis/lredis.c" },
      defines = { "_GNU_SOURCE" },
      incdirs = { "csrc/lua", "$(HIREDIS_INCDIR)" },
      libdirs = { "$(HIREDIS_LIBDIR)" },
      libraries = { "hiredis" },
    },
  },
}
