package client

// KeptAlive returns how many handles (KeepAlive or Renew callers) wait on or
// keep alive lease id: tests use it to order events without sleeping.
func (c *Client) KeptAlive(id int64) int {
	m, err := c.keepAliveManager()
	if err != nil {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.leases[id]; e != nil {
		return len(e.handles)
	}
	return 0
}
