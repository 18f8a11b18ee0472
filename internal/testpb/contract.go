package testpb

// ResponseType declares EchoReply as the only response type of an Echo
// request, satisfying netmsg.Request[*EchoReply].
func (*Echo) ResponseType() *EchoReply { return nil }
