# sonde build. `make` builds ./sonde; `make test` and `make demo` first install
# what is missing (scripts/deps.sh), so both work on a fresh Debian 12 machine.

BUILD    ?= build
# V=1 shows full commands.
V ?= 0
ifeq ($(V),0)
Q := @
msg = @printf '  %-5s %s\n' $(1) $(2);
else
Q :=
msg =
endif
CC       ?= gcc
CLANG    ?= clang
BPFTOOL  ?= bpftool
BTF      ?= /sys/kernel/btf/vmlinux

VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
ARCH     := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')

PKGS     := libbpf libelf zlib jansson libcurl libnetfilter_queue libmnl \
	    libnetfilter_conntrack \
	    libmicrohttpd sqlite3 yaml-0.1
WARN     := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral
CFLAGS   ?= -O2 -g
ALL_CFLAGS = -std=gnu11 $(WARN) $(CFLAGS) -D_GNU_SOURCE \
	     -DSONDE_VERSION=\"0.1.0-$(VERSION)\" \
	     -Isrc -Ibpf -I$(BUILD)/bpf
LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || \
	     echo -lbpf -lelf -lz -ljansson -lcurl -lnetfilter_queue -lmnl \
	     -lnetfilter_conntrack \
	     -lmicrohttpd -lsqlite3 -lyaml) -lm -lpthread
SAN      := -fsanitize=address,undefined -fno-omit-frame-pointer \
	    -fno-sanitize-recover=undefined

BPF_SRC  := $(wildcard bpf/*.bpf.c)
BPF_OBJ  := $(patsubst bpf/%.bpf.c,$(BUILD)/bpf/%.bpf.o,$(BPF_SRC))
SKELS    := $(patsubst bpf/%.bpf.c,$(BUILD)/bpf/%.skel.h,$(BPF_SRC))

SRC      := $(shell find src -name '*.c' | sort)
LIB_SRC  := $(filter-out src/main.c,$(SRC))
REL_OBJ  := $(patsubst src/%.c,$(BUILD)/release/%.o,$(LIB_SRC))
ASAN_OBJ := $(patsubst src/%.c,$(BUILD)/asan/%.o,$(LIB_SRC))

UNIT_SRC := $(wildcard tests/unit/test_*.c)
# libFuzzer targets: each links the parser sources it exercises (src/l7/).
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
FUZZ_LIB := $(wildcard src/l7/*.c)
FUZZ_SECONDS ?= 600
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/asan/tests/%,$(UNIT_SRC))

.PHONY: all asan deps test unit fuzzers demo bench fuzz clean format
.DELETE_ON_ERROR:

all: sonde

sonde: $(BUILD)/release/sonde
	$(Q)ln -sf $< $@

asan: $(BUILD)/asan/sonde

deps:
	@scripts/deps.sh

# --- BPF: vmlinux.h from the running kernel's BTF, CO-RE objects, skeletons
$(BUILD)/bpf/vmlinux.h:
	@mkdir -p $(@D)
	@test -r $(BTF) || { echo "error: no kernel BTF at $(BTF): sonde needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (or set BTF=path)"; exit 1; }
	$(call msg,GEN,$@)
	$(Q)$(BPFTOOL) btf dump file $(BTF) format c > $@

$(BUILD)/bpf/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/*.h) $(BUILD)/bpf/vmlinux.h
	$(call msg,BPF,$@)
	$(Q)$(CLANG) -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) $(WARN) \
		-Wno-unused-function -Wno-unused-parameter -I$(BUILD)/bpf -Ibpf -c $< -o $@

# `gen object` links the object and drops DWARF, keeping BTF: the skeleton
# embeds a small ELF instead of megabytes of debug info.
$(BUILD)/bpf/%.linked.o: $(BUILD)/bpf/%.bpf.o
	$(call msg,LINK,$@)
	$(Q)$(BPFTOOL) gen object $@ $<

$(BUILD)/bpf/%.skel.h: $(BUILD)/bpf/%.linked.o
	$(call msg,SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name $(subst -,_,$*)_bpf > $@

.SECONDARY:

# --- user space: release and ASan/UBSan variants of the same objects
$(BUILD)/release/%.o: src/%.c | $(SKELS)
	@mkdir -p $(@D)
	$(call msg,CC,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/asan/%.o: src/%.c | $(SKELS)
	@mkdir -p $(@D)
	$(call msg,CC,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $(SAN) -O1 -MMD -MP -c $< -o $@

$(BUILD)/release/libsonde.a: $(REL_OBJ)
	$(call msg,AR,$@)
	$(Q)ar rcs $@ $^

$(BUILD)/asan/libsonde.a: $(ASAN_OBJ)
	$(call msg,AR,$@)
	$(Q)ar rcs $@ $^

$(BUILD)/release/sonde: $(BUILD)/release/main.o $(BUILD)/release/libsonde.a
	$(call msg,LD,$@)
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/asan/sonde: $(BUILD)/asan/main.o $(BUILD)/asan/libsonde.a
	$(call msg,LD,$@)
	$(Q)$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS)

$(BUILD)/asan/tests/%: tests/unit/%.c $(BUILD)/asan/libsonde.a
	@mkdir -p $(@D)
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $(SAN) -O1 -o $@ $< $(BUILD)/asan/libsonde.a \
		-lcmocka $(LDLIBS)

$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB) $(wildcard src/l7/*.h)
	@mkdir -p $(@D)
	$(call msg,FUZZ,$@)
	$(Q)$(CLANG) -std=gnu11 $(WARN) -g -O1 -D_GNU_SOURCE -Isrc \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		-o $@ $< $(FUZZ_LIB)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# --- the README's two commands
unit: $(UNIT_BIN)

fuzzers: $(FUZZ_BIN)

test: deps
	$(MAKE) all asan unit fuzzers
	tests/run.sh

demo: deps
	$(MAKE) all
	scripts/demo.sh

bench: deps
	$(MAKE) all
	bench/run.sh

# Long fuzzing: FUZZ_SECONDS per target (default 600), from the seed corpus
# in tests/fuzz/corpus/<name>; new inputs go to $(BUILD)/fuzz/corpus-<name>.
fuzz: deps
	$(MAKE) fuzzers
	@for f in $(FUZZ_BIN); do n=$$(basename $$f | sed 's/^fuzz_//'); \
		mkdir -p $(BUILD)/fuzz/corpus-$$n; \
		echo "fuzz: $$f for $(FUZZ_SECONDS)s"; \
		$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			$(BUILD)/fuzz/corpus-$$n tests/fuzz/corpus/$$n || exit 1; \
	done

format:
	clang-format -i $(SRC) $(wildcard src/*/*.h bpf/*.h bpf/*.bpf.c tests/unit/*.c)

clean:
	rm -rf $(BUILD) sonde
