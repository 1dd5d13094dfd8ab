# libmapshare: the C library (include/mapshare.h) from csrc/, without Python.
#
#   make lib                  # build/c/libmapshare.a and build/c/libmapshare.so
#   make lib BUILD=/tmp/x     # elsewhere
#   make install PREFIX=/usr/local
#   make clean
#
# Linux only for now (the Windows core builds inside the Python wheel; see docs/c-api.md).
# Link a program with:  cc prog.c -Iinclude build/c/libmapshare.a -lpthread -lrt
# (or -Lbuild/c -lmapshare -Wl,-rpath,... for the shared library).

CC ?= cc
AR ?= ar
BUILD ?= build/c
PREFIX ?= /usr/local
CFLAGS ?= -O2 -g
MS_CFLAGS = -std=gnu11 -Wall -Wextra -Wno-missing-field-initializers -fno-strict-aliasing \
            -fPIC -fvisibility=hidden -Icsrc
LIBS = -lpthread -lrt

CORE = csrc/segment.c csrc/sync.c csrc/channel.c csrc/inspect.c csrc/platform/linux.c
CAPI = csrc/capi/api.c csrc/capi/blake2b.c
SRCS = $(CORE) $(CAPI)
OBJS = $(patsubst %.c,$(BUILD)/obj/%.o,$(SRCS))
HDRS = $(wildcard csrc/*.h csrc/platform/*.h csrc/capi/*.h) include/mapshare.h

.PHONY: lib install clean
lib: $(BUILD)/libmapshare.a $(BUILD)/libmapshare.so

$(BUILD)/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(MS_CFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/libmapshare.a: $(OBJS)
	rm -f $@
	$(AR) rcs $@ $(OBJS)

$(BUILD)/libmapshare.so: $(OBJS)
	$(CC) -shared $(OBJS) -o $@ $(LIBS)

install: lib
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib
	install -m 644 include/mapshare.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(BUILD)/libmapshare.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libmapshare.so $(DESTDIR)$(PREFIX)/lib/

clean:
	rm -rf $(BUILD)
