//! Generates the Tetragon API subset from `proto/` without a system `protoc`:
//! `protox` parses the .proto files in-process, `tonic-prost-build` writes the
//! messages and the gRPC client/server, and `pbjson-build` adds serde impls that
//! read and write Tetragon's protojson export format (snake_case names).
//! `proto/tetragon/lean.proto` (the event stream as the agent reads it) gets
//! protobuf code only.
use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let fds = protox::compile(["tetragon/tetragon.proto"], ["proto"])?;
    let descriptor_bytes = fds.encode_to_vec();

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Well-known types come from pbjson-types, which also gives them protojson
        // (wrappers as plain numbers, timestamps as RFC 3339).
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(fds)?;

    pbjson_build::Builder::new()
        .out_dir(&out_dir)
        .register_descriptors(&descriptor_bytes)?
        .preserve_proto_field_names()
        // The export log is written by newer Tetragon versions than our subset knows.
        .ignore_unknown_fields()
        .ignore_unknown_enum_variants()
        .build(&[".tetragon"])?;

    // The lean stream types (proto/tetragon/lean.proto): protobuf only, no
    // gRPC stubs (the call is hand-written), every `bytes` field a zero-copy
    // `bytes::Bytes` slice of the received frame.
    let lean = protox::compile(["tetragon/lean.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .bytes(".tetragon.lean")
        .compile_fds(lean)?;
    Ok(())
}
