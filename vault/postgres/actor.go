package postgres

// withOperator returns detail with the operator's name under "operator"
// (a new map when detail is nil), so that an audit row made at the command
// line names the person who ran the command.
func withOperator(detail map[string]any, operator string) map[string]any {
	if detail == nil {
		detail = make(map[string]any, 1)
	}
	detail["operator"] = operator
	return detail
}
