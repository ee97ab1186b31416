# tilegrad build.
#
#   make            library + programs (./train, ./generate)
#   make test       build and run the GoogleTest suites; ends with "N passed, M failed"
#   make bench      build the benchmarks into build/bench/
#   make deps       install the Debian packages that building, running and `make test` need (idempotent)
#   make deps-bench install the yardsticks the benchmarks and fixture scripts compare with (OpenBLAS, PyTorch)
#   make data       write the default corpus, data/corpus/kjv.txt, and link Fashion-MNIST into data/fashion-mnist/
#   make SAN=1 ...  AddressSanitizer + UndefinedBehaviorSanitizer build (in build-san/); `make SAN=1 test`
#                   runs the whole suite under them, leak checks included
#   make TSAN=1 ... ThreadSanitizer build (in build-tsan/, CPU only); `make TSAN=1 test` runs the tests
#                   of the loaders' prefetch threads and of ./train's signal handling
#   make CUDA=0|1   force the CUDA backend off or on (default: on when nvcc and CUDA sources exist)

CXX      ?= g++
SAN      ?= 0
TSAN     ?= 0
BUILD    ?= $(if $(filter 1,$(SAN)),build-san,$(if $(filter 1,$(TSAN)),build-tsan,build))
ifeq ($(SAN)$(TSAN),11)
  $(error SAN=1 and TSAN=1 cannot be combined: ThreadSanitizer and AddressSanitizer exclude each other)
endif

# Baseline x86-64, so that the binaries run on any x86-64 CPU; the kernels are compiled once per
# instruction-set level besides (ISA_SRCS below) and chosen at run time.
BASE_ARCH := -march=x86-64
CXXFLAGS := -std=c++17 -Wall -Wextra -fopenmp -I. -MMD -MP
ifeq ($(SAN),1)
  # -g1: the line tables that the reports' stack traces need, at a fraction of full debug information's
  # compile time.
  CXXFLAGS += -O1 -g1 $(BASE_ARCH) -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDFLAGS  += -fsanitize=address,undefined
else ifeq ($(TSAN),1)
  CXXFLAGS += -O1 -g1 $(BASE_ARCH) -fno-omit-frame-pointer -fsanitize=thread
  LDFLAGS  += -fsanitize=thread
else
  CXXFLAGS += -O3 $(BASE_ARCH)
endif
LDFLAGS  += -fopenmp
# zlib reads gzip-compressed IDX files; Debian's libstb holds the stb_image, stb_image_resize and
# stb_image_write implementations, so no source file defines STB_*_IMPLEMENTATION.
LDLIBS   := -lpthread -lz -lstb

# ---- optional dependencies, detected -------------------------------------------------------
# CUDA: nvcc on PATH or in /usr/local/cuda, and CUDA sources in the tree.
CUDA_HOME ?= /usr/local/cuda
NVCC      := $(or $(shell command -v nvcc 2>/dev/null),$(wildcard $(CUDA_HOME)/bin/nvcc))
CU_SRCS   := $(wildcard tensor/*.cu ops/cuda/*.cu optim/*.cu dist/*.cu)
# ThreadSanitizer cannot see into the CUDA runtime's threads, so its build is CPU only.
ifeq ($(TSAN),1)
  CUDA ?= 0
  ifeq ($(CUDA),1)
    $(error TSAN=1 builds without CUDA (the CUDA runtime is not instrumented); drop CUDA=1)
  endif
endif
CUDA      ?= $(if $(and $(NVCC),$(CU_SRCS)),1,0)
ifeq ($(CUDA),1)
  ifeq ($(NVCC),)
    $(error CUDA=1 but nvcc was not found on PATH or in $(CUDA_HOME)/bin)
  endif
  CXXFLAGS  += -DTG_CUDA -I$(CUDA_HOME)/include
  LDLIBS    += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart
  NVCCFLAGS := -std=c++17 -O3 -I. -MMD -MP --expt-relaxed-constexpr \
               -gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_90a,code=sm_90a \
               -Xcompiler -fopenmp,-Wall,-Wextra -DTG_CUDA
  # NCCL for multi-GPU data parallel, when its header is installed.
  ifneq ($(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h),)
    CXXFLAGS += -DTG_NCCL
    LDLIBS   += -lnccl
  endif
else
  CU_SRCS :=
endif

# MPI for data-parallel CPU ranks (dist/mpi_communicator.cpp), when Open MPI's compiler wrapper is
# installed (`make deps`). Only dist/ sees mpi.h; everything links libmpi. Without it dist/ builds
# its single-process engine and a run under mpirun says that this build has no MPI.
MPICXX := $(shell command -v mpicxx 2>/dev/null)
ifneq ($(MPICXX),)
  # The C API only: the deprecated C++ bindings in mpi.h do not compile cleanly under -Wextra.
  MPI_COMPILE := -DTG_MPI -DOMPI_SKIP_MPICXX=1 -DMPICH_SKIP_MPICXX=1 $(shell $(MPICXX) --showme:compile)
  LDLIBS      += $(shell $(MPICXX) --showme:link)
endif

# OpenBLAS is a yardstick in the benchmarks only (`make deps-bench`), never in the library or tests.
HAVE_OPENBLAS := $(if $(wildcard /usr/include/x86_64-linux-gnu/cblas.h /usr/include/cblas.h /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h),1,0)
OPENBLAS_INC  := $(dir $(firstword $(wildcard /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h /usr/include/x86_64-linux-gnu/cblas.h /usr/include/cblas.h)))
PEER_FLAGS    := $(if $(filter 1,$(HAVE_OPENBLAS)),-DTG_HAVE_OPENBLAS -I$(OPENBLAS_INC),)
PEER_LIBS     := $(if $(filter 1,$(HAVE_OPENBLAS)),-lopenblas,)

# ---- sources -------------------------------------------------------------------------------
LIB_DIRS  := tensor ops ops/cpu ops/cuda autograd autograd/functions nn optim dist data programs/lib
LIB_SRCS  := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.cpp))

# ---- instruction-set levels (ops/cpu/isa.h) ------------------------------------------------
# Each file in ISA_SRCS is compiled once per level, with the level's -march and TG_CPU_ISA_NS
# naming the namespace its code goes into; ops/cpu/isa_dispatch.cpp forwards to the active level.
# A level's object may also hold weak (inline, template) functions from the headers it includes,
# std:: ones among them, compiled with the level's instructions. The linker keeps one copy of each
# weak symbol for the whole program, which could be an AVX-512 copy called from baseline code, so
# each level's weak functions, the virtual tables that point at them and the COMDAT groups that hold
# them are renamed with the level as suffix (objcopy): every level, and the baseline, calls only its
# own copies. Names inside the level's own namespace (tg::cpu::<level>, "3cpu<n><level>" mangled)
# are distinct per level already and keep their names: a vtable emitted only with its class's key
# function is referenced, undefined, from the level's other objects under that name.
ISA_LEVELS       := scalar avx2 avx512
ISA_FLAGS_scalar := -march=x86-64
ISA_FLAGS_avx2   := -march=x86-64-v3
ISA_FLAGS_avx512 := -march=x86-64-v4
# Every kernel file of ops/cpu/: those with intrinsics, and the plain loops the compiler vectorises,
# which baseline x86-64 (SSE2, no FMA, no SSE4.1 rounding) runs up to 40x slower (GELU, softmax).
# The bf16 GEMM (gemm_bf16*.cpp) is left out: it checks the CPU itself (cpu_has_avx512_bf16) and its
# kernel file is built for AVX512_BF16 below, so one copy serves every level.
ISA_SRCS := $(filter-out ops/cpu/isa.cpp ops/cpu/isa_dispatch.cpp ops/cpu/gemm_bf16%.cpp,$(wildcard ops/cpu/*.cpp))
# $(call isa_objs,BUILD_DIR): the per-level objects of ISA_SRCS.
isa_objs = $(foreach l,$(ISA_LEVELS),$(patsubst %.cpp,$(1)/obj/%.$(l).o,$(ISA_SRCS)))
# $(call isa_rule,BUILD_DIR,LEVEL,COMPILER AND FLAGS)
define isa_rule
$(1)/obj/%.$(2).o: %.cpp
	@mkdir -p $$(dir $$@)
	$(3) $$(ISA_FLAGS_$(2)) -DTG_CPU_ISA_NS=$(2) -MF $$(@:.o=.d) -MT $$@ -c $$< -o $$@
	@{ nm --defined-only $$@ | awk '$$$$2 == "W" || ($$$$2 == "V" && $$$$3 ~ /^_ZTV/) { print $$$$3 }'; \
	   readelf -gW $$@ | sed -n 's/^COMDAT group section .*\[\(.*\)\] contains.*/\1/p'; } | \
	  sort -u | awk '$$$$1 !~ /3cpu[0-9]+$(2)/ { print $$$$1, $$$$1 ".$(2)" }' > $$@.syms && \
	  objcopy --redefine-syms=$$@.syms $$@ && rm -f $$@.syms || { rm -f $$@ $$@.syms; exit 1; }
endef
$(foreach l,$(ISA_LEVELS),$(eval $(call isa_rule,$(BUILD),$(l),$$(CXX) $$(CXXFLAGS))))

LIB_OBJS  := $(patsubst %.cpp,$(BUILD)/obj/%.o,$(filter-out $(ISA_SRCS),$(LIB_SRCS))) $(call isa_objs,$(BUILD)) \
             $(patsubst %.cu,$(BUILD)/obj/%.o,$(CU_SRCS))
LIB       := $(BUILD)/libtilegrad.a

TEST_SRCS  := $(wildcard tests/*.cpp)
# The ThreadSanitizer binary holds only the suites of the threads it checks (see TSAN_TESTS below).
TSAN_TEST_SRCS := tests/main.cpp tests/test_data.cpp tests/test_image_loader.cpp tests/test_train.cpp \
                  tests/test_train_images.cpp tests/test_train_loop.cpp tests/test_stop_signal.cpp
ifeq ($(TSAN),1)
  TEST_SRCS := $(TSAN_TEST_SRCS)
endif
TEST_OBJS  := $(patsubst %.cpp,$(BUILD)/obj/%.o,$(TEST_SRCS))
TEST_BIN   := $(BUILD)/tilegrad_tests

BENCH_SRCS := $(filter-out bench/bench_common.cpp,$(wildcard bench/*.cpp))
BENCH_CPU_BINS := $(patsubst bench/%.cpp,$(BUILD)/bench/%,$(BENCH_SRCS))
# GPU benchmarks (bench/*.cu) may call cuBLAS as the yardstick; the library never links it.
BENCH_CU_SRCS  := $(if $(filter 1,$(CUDA)),$(wildcard bench/*.cu),)
BENCH_GPU_BINS := $(patsubst bench/%.cu,$(BUILD)/bench/%,$(BENCH_CU_SRCS))
BENCH_BINS     := $(BENCH_CPU_BINS) $(BENCH_GPU_BINS)
BENCH_COMMON := $(if $(wildcard bench/bench_common.cpp),$(BUILD)/obj/bench/bench_common.o,)

# Programs live at the root so that `./train` works from a fresh clone; the sanitizer builds keep
# their own copies (build-san/bin/, build-tsan/bin/) so they never replace the optimised ones.
PROGRAM_NAMES := $(patsubst programs/%.cpp,%,$(wildcard programs/*.cpp))
PROGRAM_DIR   := $(if $(filter 1,$(SAN) $(TSAN)),$(BUILD)/bin/,)
PROGRAMS      := $(addprefix $(PROGRAM_DIR),$(PROGRAM_NAMES))

.PHONY: all test bench deps deps-bench data clean programs
all: $(LIB) programs

programs: $(PROGRAMS)

$(BUILD)/obj/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

$(BUILD)/obj/dist/%.o: CXXFLAGS += $(MPI_COMPILE)

$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

# Files named *_avx512bf16.cpp (the bf16 GEMM kernel, the bf16 peak probe) are compiled for that
# ISA whatever -march says; their callers run them only after checking the CPU at run time
# (cpu::cpu_has_avx512_bf16 in ops/cpu/gemm_bf16.h).
BF16_KERNEL_FLAGS := -mavx512f -mavx512bf16 -mavx512bw -mavx512vl -mavx512dq -mfma
$(BUILD)/obj/%_avx512bf16.o: CXXFLAGS += $(BF16_KERNEL_FLAGS)

$(LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	@rm -f $@ && ar rcs $@ $^ && echo "ar $@"

$(PROGRAMS): $(PROGRAM_DIR)%: $(BUILD)/obj/programs/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CXX) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# The GTest main prints the "N passed, M failed" line. Tests that run the programs find them
# through TG_PROGRAM_DIR ("./", or "build-san/bin/" and "build-tsan/bin/" under the sanitizers).
$(BUILD)/obj/tests/%.o: CXXFLAGS += -DTG_PROGRAM_DIR='"./$(PROGRAM_DIR)"'
$(TEST_BIN): $(TEST_OBJS) $(LIB)
	$(CXX) $(LDFLAGS) $^ -o $@ -lgtest $(LDLIBS)

# Under the sanitizers the suite, and every program it starts (they inherit the environment), stop
# at the first report.
# Open MPI's own allocations at exit are suppressed by tests/lsan_mpi.supp (it says why).
ifeq ($(SAN),1)
  TEST_ENV := ASAN_OPTIONS=detect_leaks=1:check_initialization_order=1:strict_string_checks=1 \
              LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan_mpi.supp:print_suppressions=0 \
              UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
endif
# TSAN=1 runs the tests that start, stop, restore and destroy the prefetch threads, and those that
# signal ./train mid-run (TEST_ARGS picks others among the suites it builds). libgomp is not built
# with ThreadSanitizer, so it cannot see the ordering its barriers give and would report races
# between OpenMP workers: one OpenMP thread leaves the pairs under test, the prefetch threads and
# the training thread, and the signal handler and the thread that polls its flag.
TSAN_TESTS := --gtest_filter='Loader.*:ImageLoader*:TrainLoop.*:StopSignal*:TrainProgram.ResumeAfterSigint*:TrainProgram.Sigterm*:ImageProgram.ResumeAfterSigint*'
ifeq ($(TSAN),1)
  TEST_ARGS ?= $(TSAN_TESTS)
  TEST_ENV  := OMP_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
endif

test: $(TEST_BIN) $(PROGRAMS)
	@$(TEST_ENV) ./$(TEST_BIN) $(TEST_ARGS)

$(BUILD)/obj/bench/%.o: CXXFLAGS += $(PEER_FLAGS)
# The benchmark objects are rebuilt when OpenBLAS comes or goes: the stamp's name holds whether
# it was found, and making one removes the other.
PEER_STAMP := $(BUILD)/obj/bench/.openblas-$(HAVE_OPENBLAS)
$(PEER_STAMP):
	@mkdir -p $(dir $@)
	@rm -f $(BUILD)/obj/bench/.openblas-* && touch $@
$(patsubst bench/%.cpp,$(BUILD)/obj/bench/%.o,$(BENCH_SRCS)) $(BENCH_COMMON): $(PEER_STAMP)
$(BENCH_CPU_BINS): $(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(BENCH_COMMON) $(LIB)
	@mkdir -p $(dir $@)
	$(CXX) $(LDFLAGS) $^ -o $@ $(LDLIBS) $(PEER_LIBS)

$(BENCH_GPU_BINS): $(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(BENCH_COMMON) $(LIB)
	@mkdir -p $(dir $@)
	$(CXX) $(LDFLAGS) $^ -o $@ $(LDLIBS) -lcublas

bench: $(BENCH_BINS)

# Debian packages. `make deps`: the build (g++, make, OpenMP via libgomp, GoogleTest,
# nlohmann-json, stb, zlib), the default corpus (bible-kjv), the loss plot (gnuplot) and Open MPI for
# several CPU ranks (libopenmpi-dev, openmpi-bin; `make test` runs two). `make
# deps-bench`: the yardsticks, used only by bench/ and the fixture scripts in tests/reference/
# (OpenBLAS for bench_gemm and bench_conv; PyTorch and NumPy for bench/torch/*.py and the fixtures,
# which are committed, so `make test` never runs them). Sizes on a fresh Debian 12: README.md.
DEB_PACKAGES       := g++ make libgtest-dev nlohmann-json3-dev libstb-dev zlib1g-dev bible-kjv gnuplot-nox \
                      libopenmpi-dev openmpi-bin
DEB_BENCH_PACKAGES := libopenblas-dev python3 python3-numpy python3-torch

# $(call apt_install,TARGET,PACKAGES): installs the missing ones when run as root, prints the
# apt-get command otherwise.
define apt_install
@missing=$$(for p in $(2); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
if [ -z "$$missing" ]; then echo "make $(1): all packages present"; \
elif [ "$$(id -u)" = 0 ]; then \
  echo "make $(1): installing" $$missing; \
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
else echo "make $(1): run as root: apt-get install -y --no-install-recommends" $$missing; exit 1; fi
endef

deps:
	$(call apt_install,deps,$(DEB_PACKAGES))

deps-bench:
	$(call apt_install,deps-bench,$(DEB_BENCH_PACKAGES))

FASHION_MNIST_FILES := $(addprefix data/fashion-mnist/,train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz \
                       t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
data: data/corpus/kjv.txt $(FASHION_MNIST_FILES)

data/corpus/kjv.txt:
	@command -v bible >/dev/null 2>&1 || $(MAKE) deps
	@mkdir -p data/corpus
	./data/make_kjv.sh $@

# Debian's dataset-fashion-mnist installs the four IDX files under /usr/share/datasets/fashion-mnist.
$(FASHION_MNIST_FILES) &:
	./data/make_fashion_mnist.sh data/fashion-mnist

clean:
	rm -rf build build-san build-tsan build-fuzz $(PROGRAM_NAMES)

-include $(LIB_OBJS:.o=.d) $(patsubst bench/%.cu,$(BUILD)/obj/bench/%.d,$(BENCH_CU_SRCS)) $(TEST_OBJS:.o=.d) $(BENCH_COMMON:.o=.d) $(patsubst bench/%.cpp,$(BUILD)/obj/bench/%.d,$(BENCH_SRCS)) $(patsubst %,$(BUILD)/obj/programs/%.d,$(PROGRAM_NAMES))

# ---- fuzzing -------------------------------------------------------------------------------
#   make fuzz FUZZ_SECONDS=N   build the libFuzzer targets (tests/fuzz/fuzz_*.cpp) and run each for N
#                              seconds (default 60) on a copy of its seed corpus; one line per target,
#                              fails when any target finds a crash, leak, UB, hang or foreign exception.
# clang builds the library again in build-fuzz/ (coverage-instrumented, ASan + UBSan), never mixing
# with the g++ objects; the targets add libFuzzer's main. Not part of `make test`.
FUZZ_CXX      ?= clang++
FUZZ_BUILD    := build-fuzz
FUZZ_SECONDS  ?= 60
FUZZ_CXXFLAGS := -std=c++17 -Wall -Wextra -fopenmp -I. -MMD -MP -O1 -g -march=x86-64 -fno-omit-frame-pointer \
                 -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_LIB_OBJS := $(patsubst %.cpp,$(FUZZ_BUILD)/obj/%.o,$(filter-out $(ISA_SRCS),$(LIB_SRCS))) $(call isa_objs,$(FUZZ_BUILD))
FUZZ_LIB      := $(FUZZ_BUILD)/libtilegrad.a
FUZZ_SRCS     := $(wildcard tests/fuzz/fuzz_*.cpp)
FUZZ_BINS     := $(patsubst tests/fuzz/%.cpp,$(FUZZ_BUILD)/%,$(FUZZ_SRCS))

.PHONY: fuzz fuzz-build
$(FUZZ_BUILD)/obj/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_CXXFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
$(foreach l,$(ISA_LEVELS),$(eval $(call isa_rule,$(FUZZ_BUILD),$(l),$$(FUZZ_CXX) $$(FUZZ_CXXFLAGS) -fsanitize=fuzzer-no-link)))

$(FUZZ_BUILD)/obj/%_avx512bf16.o: FUZZ_CXXFLAGS += $(BF16_KERNEL_FLAGS)

$(FUZZ_LIB): $(FUZZ_LIB_OBJS)
	@rm -f $@ && ar rcs $@ $^ && echo "ar $@"

$(FUZZ_BINS): $(FUZZ_BUILD)/%: tests/fuzz/%.cpp $(FUZZ_LIB)
	$(FUZZ_CXX) $(FUZZ_CXXFLAGS) -fsanitize=fuzzer $< $(FUZZ_LIB) -o $@ $(LDLIBS)

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	@tests/fuzz/run_fuzzers.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(patsubst $(FUZZ_BUILD)/%,%,$(FUZZ_BINS))

-include $(FUZZ_LIB_OBJS:.o=.d) $(FUZZ_BINS:=.d)

# The seed corpora are committed; this rewrites them with the library's own writers (a normal build),
# plus the safetensors fixture that Python wrote.
.PHONY: fuzz-corpus
$(BUILD)/fuzz_make_corpus: tests/fuzz/make_corpus.cpp $(LIB)
	$(CXX) $(CXXFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)
fuzz-corpus: $(BUILD)/fuzz_make_corpus
	rm -rf tests/fuzz/corpus && ./$<
	cp tests/reference/safetensors_fixture.safetensors tests/fuzz/corpus/fuzz_safetensors/written_by_python.safetensors
