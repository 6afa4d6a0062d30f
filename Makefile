# moonws -- build, test and demo.  `make` builds moonws/core.so; `make test`
# and `make example` first install what is missing (Debian packages, the
# pinned Node peer), then build, then run.  See README.md.

LUA_VERSION ?= 5.4
LUA ?= lua$(LUA_VERSION)
LUA_INCDIR ?= /usr/include/lua$(LUA_VERSION)

CC ?= cc
OPTFLAGS ?= -O2 -g
WARNFLAGS = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
CPPFLAGS_BASE = -D_GNU_SOURCE -DOPENSSL_API_COMPAT=30000 -DOPENSSL_NO_DEPRECATED
# Where OpenSSL's and zlib's headers are when not in the compiler's own path
# (make windows sets it); every layer may use them.
DEP_INC ?=
PICFLAGS ?= -fPIC -fvisibility=hidden
CFLAGS_BASE = -std=c11 $(WARNFLAGS) $(OPTFLAGS) $(PICFLAGS) $(CPPFLAGS_BASE) $(DEP_INC) $(CFLAGS)
# Tests, fuzzers and tools see every layer.
CPPFLAGS_ALL = $(CPPFLAGS_BASE) -Icsrc/core -Icsrc/net -Icsrc/lua
CFLAGS_ALL = $(CFLAGS_BASE) -Icsrc/core -Icsrc/net -Icsrc/lua
LIBS = -lssl -lcrypto -lpthread -lz

# Each layer compiles with only the include paths it may use (docs/DESIGN.md 2.1),
# so a forbidden #include fails the build: csrc/core (sans-I/O) sees
# neither Lua nor sockets, csrc/net (sockets) no Lua, csrc/lua everything.
# The guard folders shadow the forbidden system headers with an #error,
# since <sys/socket.h> and friends are on every compiler's own path.
# `make check-layers` (part of make test) proves the guards bite.
GUARD = $(BUILD)/guard
CORE_FORBIDDEN = lua.h lauxlib.h lualib.h luaconf.h luajit.h lua.hpp \
  sys/socket.h netinet/in.h netinet/tcp.h arpa/inet.h netdb.h poll.h \
  sys/epoll.h sys/un.h winsock2.h ws2tcpip.h
NET_FORBIDDEN = lua.h lauxlib.h lualib.h luaconf.h luajit.h lua.hpp
CORE_INC = -I$(GUARD)/core -Icsrc/core
NET_INC = -I$(GUARD)/net -Icsrc/core -Icsrc/net
BIND_INC = -Icsrc/core -Icsrc/net -Icsrc/lua -I$(LUA_INCDIR)

BUILD = build
CORE_SRC = $(wildcard csrc/core/*.c)
NET_SRC = $(wildcard csrc/net/*.c)
BIND_SRC = $(wildcard csrc/lua/*.c)
HEADERS = $(wildcard csrc/*/*.h)
CORE_OBJ = $(CORE_SRC:csrc/%.c=$(BUILD)/%.o)
NET_OBJ = $(NET_SRC:csrc/%.c=$(BUILD)/%.o)
BIND_OBJ = $(BIND_SRC:csrc/%.c=$(BUILD)/%.o)
TEST_SRC = $(wildcard csrc/test/test_*.c)
TEST_BIN = $(TEST_SRC:csrc/test/%.c=$(BUILD)/test/%)

MODULE = moonws/core.so

.PHONY: all luajit deps deps-test test test-c test-lua conformance fuzz test-asan test-valgrind c-tests example rock clean \
        check-layers test-posix windows windows-lua54 windows-luajit windows-tree windows-rock test-windows deps-windows

all: deps $(MODULE)

deps:
	@.ci/deps build

deps-test:
	@.ci/deps test

deps-windows:
	@.ci/deps windows

# Quiet by default; `make V=1` shows the commands.
Q = $(if $(V),,@)

$(GUARD)/stamp: Makefile
	@rm -rf $(GUARD)
	@for h in $(CORE_FORBIDDEN); do mkdir -p $(dir $(GUARD)/core/)$$(dirname $$h) && \
	  echo "#error \"csrc/core is sans-I/O: it may not include <$$h> (docs/DESIGN.md 2.1)\"" \
	  >$(GUARD)/core/$$h; done
	@for h in $(NET_FORBIDDEN); do mkdir -p $(GUARD)/net/$$(dirname $$h) && \
	  echo "#error \"csrc/net knows no Lua: it may not include <$$h> (docs/DESIGN.md 2.1)\"" \
	  >$(GUARD)/net/$$h; done
	@touch $@

$(BUILD)/core/%.o: csrc/core/%.c $(HEADERS) | $(GUARD)/stamp
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_BASE) $(CORE_INC) -c $< -o $@

$(BUILD)/net/%.o: csrc/net/%.c $(HEADERS) | $(GUARD)/stamp
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_BASE) $(NET_INC) -c $< -o $@

$(BUILD)/lua/%.o: csrc/lua/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_BASE) $(BIND_INC) -c $< -o $@

# The guards bite: a core file that includes lua.h or sys/socket.h, or a
# net file that includes lua.h, does not compile with its layer's flags
# (and the same include compiles with the binding's, so the probe is fair).
check-layers: $(GUARD)/stamp
	@ok=0; bad=0; \
	probe() { printf '#include <%s>\nint layer_probe;\n' "$$2" | \
	  $(CC) $(CFLAGS_BASE) $$3 -x c -fsyntax-only - >/dev/null 2>&1; }; \
	expect() { if probe "$$@"; then r=0; else r=1; fi; \
	  if [ "$$r" = "$$4" ]; then ok=$$((ok + 1)); echo "  ok      $$1"; \
	  else bad=$$((bad + 1)); echo "  FAILED  $$1"; fi; }; \
	expect "core may not include lua.h" lua.h "$(CORE_INC)" 1; \
	expect "core may not include lauxlib.h" lauxlib.h "$(CORE_INC)" 1; \
	expect "core may not include sys/socket.h" sys/socket.h "$(CORE_INC)" 1; \
	expect "core may not include netinet/in.h" netinet/in.h "$(CORE_INC)" 1; \
	expect "core may not include poll.h" poll.h "$(CORE_INC)" 1; \
	expect "net may not include lua.h" lua.h "$(NET_INC)" 1; \
	expect "net may not include lauxlib.h" lauxlib.h "$(NET_INC)" 1; \
	expect "net may include sys/socket.h" sys/socket.h "$(NET_INC)" 0; \
	expect "the binding may include lua.h" lua.h "$(BIND_INC)" 0; \
	echo "layer check: $$ok passed, $$bad failed"; [ "$$bad" = 0 ]

# The same C for LuaJIT 2.1 (OpenResty, LÖVE, Defold): the Lua 5.1 C API,
# its own objects and output folder, no -lluajit (the host has the symbols).
LUAJIT_INCDIR ?= /usr/include/luajit-2.1
LUAJIT_MODULE = $(BUILD)/luajit/moonws/core.so
luajit: deps
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/luajit-obj LUA_INCDIR=$(LUAJIT_INCDIR) \
	  MODULE=$(LUAJIT_MODULE) $(LUAJIT_MODULE)

$(MODULE): $(CORE_OBJ) $(NET_OBJ) $(BIND_OBJ)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  LD      $@")
	$(Q)$(CC) -shared -o $@ $^ $(LDFLAGS) $(LIBS)

$(BUILD)/test/%: csrc/test/%.c $(CORE_OBJ) $(NET_OBJ) $(HEADERS)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_ALL) -Icsrc/test -o $@ $< $(CORE_OBJ) $(NET_OBJ) $(LDFLAGS) $(LIBS)

# The whole suite: C unit tests, busted specs (with the real peers), the
# LuaRocks install check; spec/run_all prints the closing summary line.
test: deps-test check-layers $(MODULE) moonws/redis.so $(TEST_BIN) luajit $(BUILD)/embed/host
	@spec/run_all

c-tests: $(TEST_BIN)

test-c: $(TEST_BIN)
	@spec/run_all c

# Every libFuzzer target (csrc/fuzz/) for FUZZ_SECONDS each (default 60);
# make test runs a 10-second pass.
FUZZ_SECONDS ?= 60
fuzz: deps-test
	@FUZZ_SECONDS=$(FUZZ_SECONDS) spec/run_all fuzz

# The suite under memory checkers (see spec/run_sanitized).
test-asan: deps-test
	@spec/run_sanitized asan

test-valgrind: deps-test $(MODULE) $(TEST_BIN)
	@spec/run_sanitized valgrind

test-lua: $(MODULE)
	@spec/run_all lua

# The protocol case suite; writes its results to spec/conformance/README.md.
conformance: deps-test $(MODULE)
	@spec/run_all conformance

example: deps $(MODULE)
	@examples/run_demo

# The game-engine example: a C host that embeds Lua 5.4 (luaL_newstate) and
# calls a game script once a frame (examples/embed/, spec/embed_spec.lua).
$(BUILD)/embed/host: examples/embed/host.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $<")
	$(Q)$(CC) -std=c11 $(WARNFLAGS) $(OPTFLAGS) $(CFLAGS) -I$(LUA_INCDIR) -o $@ $< \
	  $(LDFLAGS) -llua$(LUA_VERSION) -lm

# moonws.redis, the hiredis adapter behind moonws.pubsub: a module of its
# own, so hiredis never becomes a dependency of moonws.core.
moonws/redis.so: csrc/redis/lredis.c csrc/lua/lua_compat.h
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC+LD   $@")
	$(Q)$(CC) $(CFLAGS_ALL) -I$(LUA_INCDIR) -shared -o $@ $< $(LDFLAGS) -lhiredis

# The benchmark (bench/README.md): `make bench` installs the peers, runs
# every server under the C load generator and writes bench/RESULTS.md (a
# few minutes; never part of `make test`).  bench-tools builds the C parts;
# spec/bench_smoke_spec.lua builds and smoke-tests them inside make test.
BENCH_TOOLS = $(BUILD)/bench/loadgen $(BUILD)/bench/tcp_echo $(BUILD)/bench/micro \
              $(BUILD)/bench/malloc_count.so $(BUILD)/bench/fanout
.PHONY: bench bench-tools
bench-tools: $(BENCH_TOOLS)

bench: deps $(MODULE) luajit $(BENCH_TOOLS)
	@bench/run

$(BUILD)/bench/loadgen: bench/loadgen.c bench/malloc_count.h
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $< $(LDFLAGS) -lssl -lcrypto

$(BUILD)/bench/fanout: bench/fanout.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $< $(LDFLAGS) -lz

$(BUILD)/bench/tcp_echo: bench/tcp_echo.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $< $(LDFLAGS)

$(BUILD)/bench/micro: bench/micro.c $(BUILD)/core/ws_mask.o $(BUILD)/core/ws_utf8.o
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDFLAGS)

$(BUILD)/bench/malloc_count.so: bench/malloc_count.c bench/malloc_count.h
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC+LD   $@")
	$(Q)$(CC) $(CFLAGS_ALL) -shared -o $@ $< $(LDFLAGS) -ldl

# ---- portable POSIX (docs/PLATFORMS.md) ----
# The code path of macOS and the BSDs, on Linux: moonws built with
# -DMOONWS_PORTABLE (poll, accept+fcntl, pipe+fcntl, a self-pipe, no
# MSG_NOSIGNAL) in a copy of the tree, then the C tests, the whole busted
# suite, the LuaJIT specs and the conformance cases against that build.
test-posix: deps-test
	@spec/run_posix

# ---- Windows (docs/PLATFORMS.md): cross-built with mingw-w64 ----
# make windows builds Lua 5.4, LuaJIT and OpenSSL from Debian's source
# packages once (.ci/winbuild, cached in build/windows-deps/), then two
# runnable trees: build/windows/ (lua.exe, lua54.dll) and
# build/windows-luajit/ (luajit.exe, lua51.dll), each with moonws\core.dll,
# the Lua modules under lua\moonws\ and the embedding host embed\host.exe.
MINGW ?= x86_64-w64-mingw32-
WIN_DEPS = $(BUILD)/windows-deps
WIN_SSL = $(WIN_DEPS)/openssl
WIN_LIBS = $(WIN_SSL)/lib/libssl.a $(WIN_SSL)/lib/libcrypto.a -l:libz.a \
  -lws2_32 -lcrypt32 -lgdi32 -ladvapi32 -luser32
windows: windows-lua54 windows-luajit

windows-lua54: deps-windows
	@.ci/winbuild lua
	@.ci/winbuild openssl
	@$(MAKE) --no-print-directory windows-tree WIN_FLAVOR=lua WIN_OUT=$(BUILD)/windows \
	  WIN_EXE=lua.exe WIN_DLL=lua54.dll

windows-luajit: deps-windows
	@.ci/winbuild luajit
	@.ci/winbuild openssl
	@$(MAKE) --no-print-directory windows-tree WIN_FLAVOR=luajit WIN_OUT=$(BUILD)/windows-luajit \
	  WIN_EXE=luajit.exe WIN_DLL=lua51.dll

# One flavour's tree (called by the two above with WIN_* set).
WIN_LUA = $(WIN_DEPS)/$(WIN_FLAVOR)
WIN_MAKE = $(MAKE) --no-print-directory CC=$(MINGW)gcc BUILD=$(BUILD)/windows-obj/$(WIN_FLAVOR) \
  LUA_INCDIR=$(WIN_LUA)/include DEP_INC=-I$(WIN_SSL)/include PICFLAGS= \
  LIBS="$(WIN_LUA)/bin/$(WIN_DLL) $(WIN_LIBS)" LDFLAGS="-static-libgcc -s" \
  MODULE=$(WIN_OUT)/moonws/core.dll
windows-tree:
	@$(WIN_MAKE) $(WIN_OUT)/moonws/core.dll
	@mkdir -p $(WIN_OUT)/lua/moonws
	@cp -r $(WIN_LUA)/bin/. $(WIN_OUT)/
	@cp lua/moonws/*.lua $(WIN_OUT)/lua/moonws/
	$(if $(filter lua,$(WIN_FLAVOR)),@$(MAKE) --no-print-directory $(WIN_OUT)/host.exe WIN_LUA=$(WIN_LUA) WIN_DLL=$(WIN_DLL) WIN_OUT=$(WIN_OUT))
	@echo "  TREE    $(WIN_OUT)"

# The C game host of examples/embed (the Lua 5.4 API: Lua 5.4 tree only),
# beside lua54.dll, with the game script under embed\.
$(BUILD)/windows/host.exe: examples/embed/host.c examples/embed/game.lua
	@mkdir -p $(dir $@)/embed
	@$(if $(V),,echo "  CC      $< (Windows)")
	$(Q)$(MINGW)gcc -std=c11 $(WARNFLAGS) $(OPTFLAGS) -I$(WIN_LUA)/include \
	  -o $@ $< $(WIN_LUA)/bin/$(WIN_DLL) -lwinmm -static-libgcc -s
	@cp examples/embed/game.lua $(dir $@)/embed/

# The rockspec's MinGW-w64 flag set through LuaRocks' builtin backend:
# build/windows-rock/ (spec/windows/rock_build).
windows-rock: deps-test windows-lua54
	@spec/windows/rock_build

# Both flavours and the LuaRocks build under Wine against real peers on
# 127.0.0.1 (spec/windows/).
test-windows: deps-test windows windows-rock $(MODULE)
	@spec/windows/run

# Instructions per echoed message, counted by callgrind in the server
# (bench/instr.lua, bench/README.md): bench-instr counts every row, Node
# ws's too, and writes its section of bench/RESULTS.md (under 3 minutes);
# bench-instr-check is make test's guard (spec/run_all stage instr) against
# bench/instr-baseline.txt; bench-instr-baseline rewrites that file.
INSTR_TOOLS = $(BUILD)/bench/loadgen $(BUILD)/bench/fixed_time.so
.PHONY: bench-instr bench-instr-check bench-instr-baseline bench-instr-tools
bench-instr-tools: $(INSTR_TOOLS)

bench-instr: deps-test $(MODULE) $(INSTR_TOOLS)
	@bench/instr full

bench-instr-check: deps-test $(MODULE) $(INSTR_TOOLS)
	@spec/run_all instr

bench-instr-baseline: deps-test $(MODULE) $(INSTR_TOOLS)
	@bench/instr baseline

$(BUILD)/bench/fixed_time.so: bench/fixed_time.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC+LD   $@")
	$(Q)$(CC) $(CFLAGS_ALL) -shared -o $@ $< $(LDFLAGS)

rock: deps-test
	@spec/run_all rock

clean:
	rm -rf $(BUILD) moonws
