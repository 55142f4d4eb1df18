# Warning, sanitizer and thread-safety flags for every hubfs target.
#
# hubfs_flags is an INTERFACE library: linking it gives a target the
# project's warnings, definitions and sanitizer options.

include(CheckCCompilerFlag)
include(CheckCSourceCompiles)

add_library(hubfs_flags INTERFACE)
target_compile_definitions(hubfs_flags INTERFACE
	_GNU_SOURCE FUSE_USE_VERSION=${HUBFS_FUSE_USE_VERSION})

set(_hubfs_warnings
	-Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
	-Wold-style-definition -Wmissing-declarations -Wpointer-arith
	-Wformat=2 -Wundef -Wwrite-strings -Wvla -Wredundant-decls
	-Wimplicit-fallthrough -Wnull-dereference -Wduplicated-cond
	-Wlogical-op -Wthread-safety)
foreach(_flag IN LISTS _hubfs_warnings)
	string(MAKE_C_IDENTIFIER "HUBFS_HAVE${_flag}" _var)
	check_c_compiler_flag(${_flag} ${_var})
	if(${_var})
		target_compile_options(hubfs_flags INTERFACE ${_flag})
	endif()
endforeach()
if(HUBFS_WERROR)
	target_compile_options(hubfs_flags INTERFACE -Werror)
endif()

# Thread-safety annotations on struct fields need a clang that parses
# attributes late in C; probe instead of guessing from the version.
if(CMAKE_C_COMPILER_ID MATCHES "Clang")
	check_c_source_compiles([[
		struct __attribute__((capability("mutex"))) m { int x; };
		struct s {
			struct m lock;
			int v __attribute__((guarded_by(lock)));
		};
		int main(void) { return 0; }
	]] HUBFS_HAVE_TSA_FIELDS)
	if(HUBFS_HAVE_TSA_FIELDS)
		target_compile_definitions(hubfs_flags
			INTERFACE HUBFS_TSA_FIELDS)
	endif()
endif()

# HUBFS_SANITIZE: "", or a comma-separated list of address, undefined and
# thread (thread excludes address).  Applied to every target, tests too.
if(HUBFS_SANITIZE)
	string(REPLACE "," ";" _sanitizers "${HUBFS_SANITIZE}")
	foreach(_s IN LISTS _sanitizers)
		if(NOT _s MATCHES "^(address|undefined|thread)$")
			message(FATAL_ERROR
				"HUBFS_SANITIZE: unknown sanitizer '${_s}' "
				"(use address, undefined or thread)")
		endif()
	endforeach()
	if("address" IN_LIST _sanitizers AND "thread" IN_LIST _sanitizers)
		message(FATAL_ERROR
			"HUBFS_SANITIZE: address and thread cannot be combined")
	endif()
	add_compile_options(-fsanitize=${HUBFS_SANITIZE}
		-fno-sanitize-recover=all -fno-omit-frame-pointer -g)
	add_link_options(-fsanitize=${HUBFS_SANITIZE})
endif()
