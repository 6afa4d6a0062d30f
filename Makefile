# moonws -- build, test and demo.  `make` builds moonws/core.so; `make test`
# and `make example` first install what is missing (Debian packages, the
# pinned Node peer), then build, then run.  See README.md.

LUA_VERSION ?= 5.4
LUA ?= lua$(LUA_VERSION)
LUA_INCDIR ?= /usr/include/lua$(LUA_VERSION)

CC ?= cc
OPTFLAGS ?= -O2 -g
WARNFLAGS = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
CPPFLAGS_ALL = -D_GNU_SOURCE -DOPENSSL_API_COMPAT=30000 -DOPENSSL_NO_DEPRECATED \
               -Icsrc/core -Icsrc/net -Icsrc/lua
CFLAGS_ALL = -std=c11 $(WARNFLAGS) $(OPTFLAGS) -fPIC -fvisibility=hidden $(CPPFLAGS_ALL) $(CFLAGS)
LIBS = -lssl -lcrypto -lpthread -lz

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

.PHONY: all luajit deps deps-test test test-c test-lua conformance fuzz test-asan test-valgrind c-tests example rock clean

all: deps $(MODULE)

deps:
	@.ci/deps build

deps-test:
	@.ci/deps test

# Quiet by default; `make V=1` shows the commands.
Q = $(if $(V),,@)

$(BUILD)/%.o: csrc/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_ALL) -I$(LUA_INCDIR) -c $< -o $@

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
test: deps-test $(MODULE) moonws/redis.so $(TEST_BIN) luajit $(BUILD)/embed/host
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
              $(BUILD)/bench/malloc_count.so
.PHONY: bench bench-tools
bench-tools: $(BENCH_TOOLS)

bench: deps $(MODULE) luajit $(BENCH_TOOLS)
	@bench/run

$(BUILD)/bench/loadgen: bench/loadgen.c bench/malloc_count.h
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $< $(LDFLAGS) -lssl -lcrypto

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
