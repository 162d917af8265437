pub mod debug_cmd;
