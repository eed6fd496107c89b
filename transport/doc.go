// Package transport is a raft.Transport for hashicorp/raft over gRPC.
//
// A node creates one Transport, registers it on the gRPC server that also
// serves the client API, and passes it to raft.NewRaft:
//
//	trans, err := transport.New(transport.Config{LocalAddr: "10.0.0.1:7000"})
//	...
//	trans.Register(grpcServer)
//	r, err := raft.NewRaft(conf, fsm, logs, stable, snaps, trans)
//
// Outgoing RPCs use one lazily created grpc.ClientConn per peer address and
// carry a deadline (Config.Timeout; InstallSnapshot gets one scaled by the
// snapshot's size). AppendEntries pipelining runs over a pipeline stream, a
// plain connection of its own on the same port (Config.DialStream; the
// server's credentials hand it to ServeStream, NewPlainServerCreds in
// plaintext), or over a bidirectional gRPC stream to a peer that does not
// serve one; InstallSnapshot runs over a client stream of 1 MiB chunks. Incoming
// RPCs are handed to raft on the Consumer channel; heartbeats take raft's
// fast path when raft has set a heartbeat handler. Close fails every
// pending RPC and ends every goroutine the transport started.
//
// The wire messages live in leasepb/leasecluster/v1/raft.proto; DESIGN.md explains the
// choices.
package transport
