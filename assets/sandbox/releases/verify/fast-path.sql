SELECT execution_route FROM orders WHERE false;
SELECT 'execute_order_checked(uuid, text, text, text, numeric, numeric, text, uuid)'::regprocedure;
