# The `mqtt` user C module for CMake-based ports (esp32, rp2).
#
# The Rust core is built by cargo (mqtt/build-core.sh) for MQTT_RUST_TARGET
# (a Rust target triple, e.g. thumbv6m-none-eabi for the RP2040,
# thumbv8m.main-none-eabihf for the RP2350; the esp32's Xtensa needs the
# esp Rust toolchain) after the port's generated headers exist, because
# bindgen reads them. The result is one partially-linked object.

set(MQTT_MOD_DIR ${CMAKE_CURRENT_LIST_DIR})
get_filename_component(MQTT_CRATE_DIR ${MQTT_MOD_DIR}/../.. ABSOLUTE)
set(MQTT_CORE_OBJ ${CMAKE_BINARY_DIR}/mqtt_core/mqtt_core.o)
set(MQTT_RUST_TARGET "" CACHE STRING "Rust target triple for the mqtt core (empty: the host)")
set(MQTT_WEBSOCKET 1 CACHE STRING "1: ws:// and wss:// supported; 0: left out (MqttError -14)")

add_library(usermod_mqtt INTERFACE)

target_sources(usermod_mqtt INTERFACE
    ${MQTT_MOD_DIR}/modmqtt.c
    ${MQTT_MOD_DIR}/mqtt_glue.c
    ${MQTT_MOD_DIR}/mqtt_loop_unix.c
    ${MQTT_MOD_DIR}/mqtt_loop_bare.c
)

target_include_directories(usermod_mqtt INTERFACE
    ${MQTT_MOD_DIR}
)

target_compile_definitions(usermod_mqtt INTERFACE
    MICROPY_PY_MQTT=1
)

# The flags bindgen needs: the port target's include directories and
# definitions, known once the whole port is configured.
set(MQTT_BINDGEN_FLAGS
    "-I$<JOIN:$<TARGET_PROPERTY:${MICROPY_TARGET},INCLUDE_DIRECTORIES>, -I> -D$<JOIN:$<TARGET_PROPERTY:${MICROPY_TARGET},COMPILE_DEFINITIONS>, -D>")

add_custom_command(
    OUTPUT ${MQTT_CORE_OBJ}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/mqtt_core
    COMMAND ${CMAKE_COMMAND} -E env
        "MQTT_MPY_CFLAGS=${MQTT_BINDGEN_FLAGS}"
        "MQTT_MPY_CWD=${CMAKE_BINARY_DIR}"
        "MQTT_MPY_HEADER=${MQTT_MOD_DIR}/mqtt_bindgen.h"
        "MQTT_RUST_TARGET=${MQTT_RUST_TARGET}"
        "MQTT_WEBSOCKET=${MQTT_WEBSOCKET}"
        "MQTT_CARGO_TARGET_DIR=${CMAKE_BINARY_DIR}/mqtt_core/target"
        "LD=${CMAKE_LINKER}" "OBJCOPY=${CMAKE_OBJCOPY}" "NM=${CMAKE_NM}"
        ${MQTT_MOD_DIR}/build-core.sh ${MQTT_CRATE_DIR} ${MQTT_CORE_OBJ}
    DEPENDS
        ${CMAKE_BINARY_DIR}/genhdr/qstrdefs.generated.h
        ${CMAKE_BINARY_DIR}/genhdr/root_pointers.h
        ${CMAKE_BINARY_DIR}/genhdr/moduledefs.h
    COMMENT "Building the mqtt Rust core"
    VERBATIM
)
add_custom_target(mqtt_core ALL DEPENDS ${MQTT_CORE_OBJ})

target_link_libraries(usermod_mqtt INTERFACE ${MQTT_CORE_OBJ})
target_link_libraries(usermod INTERFACE usermod_mqtt)
